"""One attack suite per module; registered in :data:`lmlab.security.SUITES`."""
