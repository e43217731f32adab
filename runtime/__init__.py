"""Runtime: backends that turn a compiler Program into native code, and executables that run it.
Never imports the frontend."""
