"""The only modules that talk to the outside: the engine, AWS, registries, git and CI."""
