"""Exit 0 if TCP port given as the only argument is free on 127.0.0.1; otherwise say what to do."""

import socket
import sys

port = int(sys.argv[1])
with socket.socket() as probe:
    try:
        probe.bind(("127.0.0.1", port))
    except OSError:
        print(f"!! Port {port} is already in use (another `make run`, or another server).")
        print(f"!! Stop that, or pick another port: make run WEB_PORT={port + 1}")
        sys.exit(1)
