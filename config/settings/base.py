"""Settings shared by every environment. Values come from the environment through django-environ.

With nothing configured the app runs on SQLite with Redis at 127.0.0.1:6379 as the Celery broker.
"""

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
env.read_env(BASE_DIR / ".env")  # optional; a missing file is ignored

SECRET_KEY = env("SECRET_KEY", default="django-insecure-local-only-change-me")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
# Absolute URL used in emails (links, List-Unsubscribe); requests are not available in workers.
SITE_URL = env("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "anymail",
    "axes",
    "papers",
    "newsletter",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes requires: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# django-axes checks for a lockout before any password is compared, then the per-username delay.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "newsletter.admin_login.UsernameDelayBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes the write lock at BEGIN, so "select then update" claims in
    # newsletter.services.delivery are serialized between worker processes on SQLite too.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
    )
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Rate limits live in the cache. Locally: files under var/cache/, shared by every process on this machine
# and needing no table, so `migrate` + `runserver` is enough (a database cache would also take SQLite's
# write lock on every sign-up). Production uses Redis (config/settings/production.py).
CACHES = {"default": env.cache("CACHE_URL", default=f"filecache://{BASE_DIR / 'var' / 'cache'}")}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Email -----------------------------------------------------------------------------------
# EMAIL_URL (smtp://user:pass@host:587, smtp+tls://..., consolemail://) configures the backend;
# django-anymail backends can be set directly with EMAIL_BACKEND.
_email = env.email("EMAIL_URL", default="smtp://127.0.0.1:25")
EMAIL_BACKEND = env("EMAIL_BACKEND", default=_email["EMAIL_BACKEND"])
EMAIL_HOST = _email.get("EMAIL_HOST", "")
EMAIL_PORT = _email.get("EMAIL_PORT", 25)
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Paper Digest <digest@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Directory of the local outbox backend (newsletter.outbox.OutboxBackend).
EMAIL_OUTBOX_DIR = Path(env("EMAIL_OUTBOX_DIR", default=str(BASE_DIR / "var" / "outbox")))
# List-Id header value; identifies this list to mail filters.
NEWSLETTER_LIST_ID = env("NEWSLETTER_LIST_ID", default="Paper Digest <digest.localhost>")
# Optional DKIM signing: set all three (selector, domain, key file), or none.
DKIM_SELECTOR = env("DKIM_SELECTOR", default="")
DKIM_DOMAIN = env("DKIM_DOMAIN", default="")
DKIM_PRIVATE_KEY_PATH = env("DKIM_PRIVATE_KEY_PATH", default="")

ANYMAIL = {"WEBHOOK_SECRET": env("ANYMAIL_WEBHOOK_SECRET", default="")}

# --- Papers ----------------------------------------------------------------------------------
# How often beat looks for feeds that are due; each feed row has its own interval.
PAPERS_FEED_CHECK_MINUTES = env.int("PAPERS_FEED_CHECK_MINUTES", default=15)
# Largest response a fetcher reads; a bigger body is rejected, not truncated.
PAPERS_FETCH_MAX_BYTES = env.int("PAPERS_FETCH_MAX_BYTES", default=20 * 1024 * 1024)
PAPERS_FETCH_TIMEOUT = env.float("PAPERS_FETCH_TIMEOUT", default=30.0)

# --- Newsletter ------------------------------------------------------------------------------
NEWSLETTER_DISPATCH_MINUTES = env.int("NEWSLETTER_DISPATCH_MINUTES", default=5)
NEWSLETTER_CHUNK_SIZE = env.int("NEWSLETTER_CHUNK_SIZE", default=200)
NEWSLETTER_CONFIRM_MAX_AGE = timedelta(days=env.int("NEWSLETTER_CONFIRM_MAX_AGE_DAYS", default=7))
# Candidate papers considered per chunk (newest first): bounds memory whatever the backlog.
NEWSLETTER_MAX_CANDIDATES = env.int("NEWSLETTER_MAX_CANDIDATES", default=5000)
# Ingest commits after it stamps ingested_at; windows overlap by this much so no paper falls between
# two digests. Papers already sent are excluded, so the overlap never repeats one.
NEWSLETTER_WINDOW_OVERLAP = timedelta(minutes=env.int("NEWSLETTER_WINDOW_OVERLAP_MINUTES", default=15))
# A worker holds its claim on a chunk for this long and renews it every quarter of it while it sends;
# the sweeper hands a claim that was not renewed (its worker died) back to PENDING.
NEWSLETTER_CLAIM_LEASE = timedelta(seconds=env.int("NEWSLETTER_CLAIM_LEASE_SECONDS", default=60))
# A pending delivery whose task should have run this long ago was lost (broker restarted, queueing
# failed): the sweeper queues it again. A deferred delivery counts from its retry time, not before.
NEWSLETTER_STALE_PENDING = timedelta(seconds=env.int("NEWSLETTER_STALE_PENDING_SECONDS", default=60))
# How often beat runs the sweeper: a dead worker's chunk is re-driven a lease plus at most this after
# its last renewal (measured by `make faults`: 60 s sweeps made that up to 2 minutes). The sweep is
# two indexed queries on the PENDING/SENDING rows only.
NEWSLETTER_SWEEP_SECONDS = env.int("NEWSLETTER_SWEEP_SECONDS", default=30)
# First retry delay of a deferred delivery (4xx, SMTP down); doubles per attempt up to 10 minutes.
NEWSLETTER_RETRY_BACKOFF_SECONDS = env.int("NEWSLETTER_RETRY_BACKOFF_SECONDS", default=30)
# Send attempts before a delivery is marked failed (visible in the admin, which can resend it).
NEWSLETTER_MAX_ATTEMPTS = env.int("NEWSLETTER_MAX_ATTEMPTS", default=8)
# PostgreSQL: write each send outcome (SENT, deferred, failed) with synchronous_commit off. A worker
# crash loses nothing (the row is committed, only its WAL flush is deferred); a crash of the database
# server itself can lose the last ~0.6 s of SENT marks, and those few digests would be sent again.
# Without it every email waits for a WAL flush (about 2 ms here, more on network storage).
NEWSLETTER_ASYNC_COMMIT_OUTCOMES = env.bool("NEWSLETTER_ASYNC_COMMIT_OUTCOMES", default=True)
# PostgreSQL: the per-email SENT mark is a server-side prepared statement, planned once per connection
# instead of per email (a third of its database CPU, half its Python). Off behind a pooler that cannot keep
# prepared statements (PgBouncer in transaction mode before 1.21, or with max_prepared_statements = 0).
NEWSLETTER_PREPARED_OUTCOMES = env.bool("NEWSLETTER_PREPARED_OUTCOMES", default=True)
NEWSLETTER_FIRST_DIGEST_WINDOW = timedelta(days=env.int("NEWSLETTER_FIRST_DIGEST_WINDOW_DAYS", default=7))

# --- Deliverability (docs/deliverability.md) ---------------------------------------------------
# One send rate for every worker process and machine ("14/s", "50000/h"; empty = unlimited, and then
# the limiter costs nothing). Enforced by a token bucket in Redis (deliverability.sendrate).
NEWSLETTER_SEND_RATE = env("NEWSLETTER_SEND_RATE", default="")
# Optional per-domain rates on top of it, for self-hosted SMTP: "gmail.com=5/s,yahoo.com=2/s".
NEWSLETTER_DOMAIN_RATES = env("NEWSLETTER_DOMAIN_RATES", default="")
# After the relay pushes back (421, 4xx "slow down", an ESP's 429) the shared rate halves; it climbs
# back to the configured rate linearly over this many seconds (additive increase).
NEWSLETTER_RATE_RECOVERY_SECONDS = env.int("NEWSLETTER_RATE_RECOVERY_SECONDS", default=300)
# A chunk sleeps (renewing its claim) for a permit at most this long at a time; a longer wait puts the
# rest of the chunk back to PENDING with that retry time instead of holding the claim.
NEWSLETTER_PERMIT_MAX_WAIT_SECONDS = env.float("NEWSLETTER_PERMIT_MAX_WAIT_SECONDS", default=10.0)
# Warm-up of a new sending domain: the first day's cap (e.g. 200), doubled after each sending day
# without problems (throttling, brake); empty = no cap. Digests over the cap wait for the next UTC day.
NEWSLETTER_WARMUP = int(env("NEWSLETTER_WARMUP", default="") or 0) or None
# VERP: digests go out with the envelope sender bounces+<signed token>@<domain> of this address
# (e.g. "bounces@digest.example.org"), so a bounce names its subscriber. Empty = DEFAULT_FROM_EMAIL.
NEWSLETTER_BOUNCE_ADDRESS = env("NEWSLETTER_BOUNCE_ADDRESS", default="")
# The mailbox the bounces arrive in: imaps://user:pass@host[:993][/FOLDER], imap://... (plain on
# loopback only; to another host the password is sent only after STARTTLS with a valid certificate),
# or maildir:///path. Read by beat every few minutes.
NEWSLETTER_BOUNCE_MAILBOX = env("NEWSLETTER_BOUNCE_MAILBOX", default="")
NEWSLETTER_BOUNCE_CHECK_MINUTES = env.int("NEWSLETTER_BOUNCE_CHECK_MINUTES", default=5)
# The brake: sending pauses when, since the last resume, the spam complaint rate of 7 days passes the
# first (Gmail and Yahoo block above 0.3%) or the hard-bounce rate of 24 hours passes the second, each
# only once at least NEWSLETTER_BRAKE_MIN_SENT digests were sent in its window (1 of 10 is no signal).
NEWSLETTER_MAX_COMPLAINT_RATE = env.float("NEWSLETTER_MAX_COMPLAINT_RATE", default=0.003)
NEWSLETTER_MAX_BOUNCE_RATE = env.float("NEWSLETTER_MAX_BOUNCE_RATE", default=0.05)
NEWSLETTER_BRAKE_MIN_SENT = env.int("NEWSLETTER_BRAKE_MIN_SENT", default=1000)
NEWSLETTER_BRAKE_CHECK_SECONDS = env.int("NEWSLETTER_BRAKE_CHECK_SECONDS", default=60)

# --- Celery ----------------------------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
# The broker only carries ids; the database is the source of truth, so losing the queue loses nothing.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
# The send-rate limiter's Redis (every worker must share it); the broker's when that is Redis.
NEWSLETTER_LIMITER_REDIS_URL = env(
    "NEWSLETTER_LIMITER_REDIS_URL",
    default=CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else REDIS_URL,
)
# No result backend: tasks record their outcome in the database rows they work on.
CELERY_TASK_IGNORE_RESULT = True
# Tasks are idempotent (claim-by-status), so a task whose worker dies is redelivered, not lost.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One message at a time per process: a chunk is heavy, and prefetched chunks would wait behind it.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# When the broker connection drops, a running chunk keeps sending and records its outcomes: the
# database, not the broker, is the truth, and a redelivered copy of its message claims nothing.
# (Celery 6 will cancel such tasks by default; said explicitly so the upgrade changes nothing.)
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# A worker started while Redis is down waits for it instead of exiting.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Redelivery of an unacked task after a dead worker; every countdown we use stays well below it.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # Zero-setup fallback of `make run` when no Redis is reachable: one machine, folders as queues.
    _broker_dir = BASE_DIR / "var" / "broker"
    _broker_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# Beat keeps its schedule state in a file; put it with the other local state.
CELERY_BEAT_SCHEDULE_FILENAME = str(BASE_DIR / "var" / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "dispatch-digests": {
        "task": "newsletter.tasks.dispatch_digests",
        "schedule": timedelta(minutes=NEWSLETTER_DISPATCH_MINUTES),
    },
    "sweep-deliveries": {
        "task": "newsletter.tasks.sweep_deliveries",
        "schedule": timedelta(seconds=NEWSLETTER_SWEEP_SECONDS),
    },
    "expire-pending-subscribers": {
        "task": "newsletter.tasks.expire_pending_subscribers",
        "schedule": timedelta(hours=1),
    },
    "check-sending-brake": {
        "task": "newsletter.tasks.check_sending_brake",
        "schedule": timedelta(seconds=NEWSLETTER_BRAKE_CHECK_SECONDS),
    },
    "process-bounce-mailbox": {
        "task": "newsletter.tasks.process_bounce_mailbox",
        "schedule": timedelta(minutes=NEWSLETTER_BOUNCE_CHECK_MINUTES),
    },
    "fetch-due-feeds": {
        "task": "papers.tasks.fetch_due_feeds",
        "schedule": timedelta(minutes=PAPERS_FEED_CHECK_MINUTES),
    },
}

# --- Security --------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "style-src": ["'self'"],
        "script-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    }
}
# Per-IP sign-up limit and per-address email limit (the form must not be an inbox-bombing tool).
NEWSLETTER_SIGNUPS_PER_IP_PER_HOUR = env.int("NEWSLETTER_SIGNUPS_PER_IP_PER_HOUR", default=20)
NEWSLETTER_EMAILS_PER_ADDRESS_PER_DAY = env.int("NEWSLETTER_EMAILS_PER_ADDRESS_PER_DAY", default=3)
# "Send me a new link" has its own allowance, so sign-ups by someone else cannot use up the owner's.
NEWSLETTER_LINK_EMAILS_PER_ADDRESS_PER_DAY = env.int("NEWSLETTER_LINK_EMAILS_PER_ADDRESS_PER_DAY", default=3)
# "More like this" / "Not for me" posts per client address: each queues a model fit. A reader marks
# at most a digest's worth at a sitting; a household or office shares an address.
NEWSLETTER_FEEDBACK_PER_IP_PER_HOUR = env.int("NEWSLETTER_FEEDBACK_PER_IP_PER_HOUR", default=120)
# Reverse proxies in front of the app that append to X-Forwarded-For (nginx, a load balancer): the
# client address is the entry the outermost of them wrote (newsletter.client_address). 0 = no proxy,
# use REMOTE_ADDR; a value higher than the real number lets clients choose their own address.
NEWSLETTER_TRUSTED_PROXIES = env.int("NEWSLETTER_TRUSTED_PROXIES", default=0)
if NEWSLETTER_TRUSTED_PROXIES < 0:
    raise ImproperlyConfigured("NEWSLETTER_TRUSTED_PROXIES must be 0 or more")
# IPv6 visitors are limited per network of this prefix length (newsletter.client_address.client_key):
# a subscriber line gets at least a /64 and rotates addresses inside it. 48 or 56 is stricter (some
# ISPs hand out /56 or /48), 128 would count each address apart. `check --deploy` flags <32 or >64.
NEWSLETTER_IPV6_PREFIX_LENGTH = env.int("NEWSLETTER_IPV6_PREFIX_LENGTH", default=64)
if not 0 <= NEWSLETTER_IPV6_PREFIX_LENGTH <= 128:
    raise ImproperlyConfigured("NEWSLETTER_IPV6_PREFIX_LENGTH must be between 0 and 128")

# Admin log-in throttling (django-axes): after AXES_FAILURE_LIMIT wrong passwords from one client address
# (behind proxies: newsletter.client_address; IPv6: its /64), that address waits AXES_COOLOFF_TIME. Keyed
# on the address, not the username, so a stranger cannot lock the operators out. Attempts live in the
# database (visible in the admin; `manage.py axes_reset` lifts a lockout), which every web process shares.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
# The rate-limit key: an IPv6 client is its /64 (NEWSLETTER_IPV6_PREFIX_LENGTH), not one address of it.
AXES_CLIENT_IP_CALLABLE = "newsletter.client_address.client_key"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "admin/locked_out.html"
# Successful log-ins are not worth a row each; failures are what the admin lists.
AXES_DISABLE_ACCESS_LOG = True
# Quiet start-up, and log lines that name the client address only, never the username tried.
AXES_VERBOSE = False
# Per username, whatever the network (newsletter.services.login_throttle): after this many failures
# each attempt waits 1, 2, 4, ... seconds after the last failure, at most the maximum; never a lock,
# and networks the user logged in from recently do not wait.
NEWSLETTER_LOGIN_FREE_FAILURES = env.int("NEWSLETTER_LOGIN_FREE_FAILURES", default=10)
NEWSLETTER_LOGIN_MAX_DELAY_SECONDS = env.int("NEWSLETTER_LOGIN_MAX_DELAY_SECONDS", default=300)
# An attempt refused for that delay is not counted against the client's address by django-axes.
AXES_WHITELIST_CALLABLE = "newsletter.admin_login.refused_early"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
}
