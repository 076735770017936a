"""gunicorn settings for the hello-flask container (read with ``gunicorn -c gunicorn.conf.py``).

Kept in Python rather than a shell-form CMD so no shell sits between Docker and gunicorn:
gunicorn is PID 1 and receives SIGTERM directly on ``docker stop``.
"""

import os

# Listen on all interfaces inside the container; PORT overrides the default 5000.
bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
timeout = 30
graceful_timeout = 20

# Access and error logs to stdout/stderr so `docker logs` shows them.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")

# Worker heartbeat files on tmpfs rather than the container's overlay filesystem
# (also keeps working with a read-only root filesystem).
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"

# gunicorn >= 25.1 opens a control socket for `gunicornc` under $XDG_RUNTIME_DIR or
# $HOME/.gunicorn; the container user has no home and nobody runs gunicornc in it.
# (Older gunicorn versions ignore unknown settings in this file.)
control_socket_disable = True
