"""What the daemon does on its own: scheduled jobs, backups and health."""
