"""Exit 0 if the Redis URL given as the only argument answers PING within a second."""

import sys

import redis

try:
    redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1, socket_timeout=1).ping()
except redis.RedisError:
    sys.exit(1)
