"""Config, file I/O, hashing and the runtime every stage script shares."""
