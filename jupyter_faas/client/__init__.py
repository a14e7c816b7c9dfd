"""What runs in the kernel: the connection, function handles, futures, and error rebuilding."""
