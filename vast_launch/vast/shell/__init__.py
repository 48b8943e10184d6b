"""The instance side: bootstrap.sh and run_stages.sh (package data), and the Python helpers the bootstrap ships."""
