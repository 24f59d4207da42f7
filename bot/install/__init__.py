"""Installing Familiar as a systemd service: ``plan.py`` computes the steps from a few facts
about the machine, ``steps.py`` holds the steps and the two executors (real and dry run).
Nothing here runs inside the daemon."""
