"""Shared runtime library: imported unchanged by the Lambdas, the containers and the local runner."""
