"""The lab: everything the tests need on a fresh machine (engine, base images, registry, SSH Swarm manager)."""
