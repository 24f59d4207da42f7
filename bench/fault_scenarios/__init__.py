"""The fault campaign's scenarios, one module each, and their shared harness; run it with
``bench/faults.py`` (``make faults``)."""
