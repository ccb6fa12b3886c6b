"""Docker-free local runtime for the SAM function: Runtime + Extensions API, API Gateway front."""
