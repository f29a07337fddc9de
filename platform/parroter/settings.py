"""Parroter settings: every value comes from the environment, with safe defaults.

See deploy/env.example for the documented variables.
"""

import ipaddress
import os
import secrets
import tempfile
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from whitenoise.compress import Compressor

from parroter.cache import FailFastConnection

BASE_DIR = Path(__file__).resolve().parents[2]


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def env_optional(name: str) -> str | None:
    """The variable's value, or None when it is unset or empty (the library's own default)."""
    return os.environ.get(name, "").strip() or None


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


VAR_DIR = Path(os.environ.get("PARROTER_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _dev_secret_key() -> str:
    """A per-checkout key kept in var/, so a dev setup never ships a fixed secret.

    Every process of `make run` starts at once on a fresh var/: the key is written whole to a
    temporary file and hard-linked to its name, which fails if another process got there first,
    so no process ever reads a half-written key or keeps a key that another one replaced.
    """
    path = VAR_DIR / "secret_key"
    if not path.exists():
        descriptor, temporary = tempfile.mkstemp(dir=VAR_DIR, prefix=".secret_key.")  # 0600
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_urlsafe(50))
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process won: use its key
        finally:
            os.unlink(temporary)
    key = path.read_text().strip()
    if not key:
        raise ImproperlyConfigured(f"{path} is empty: delete it and a new key is made.")
    return key


# Production is HTTPS=true (deploy/env.example): TLS behind a proxy, secure cookies, HSTS.
HTTPS = env_bool("HTTPS")
SECRET_KEY = os.environ.get("SECRET_KEY", "").strip()
if not SECRET_KEY:
    if HTTPS:
        # A generated key would differ per container/host and change when the volume does,
        # logging everyone out and breaking signed links: production must be given one.
        raise ImproperlyConfigured(
            "SECRET_KEY is not set, and HTTPS=true (production) needs one: set SECRET_KEY to a "
            "long random string shared by every process, e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
        )
    SECRET_KEY = _dev_secret_key()
DEBUG = env_bool("DEBUG")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    # django.contrib.admin, with a site whose lists refuse what PostgreSQL cannot store.
    "parroter.admin_site.ParroterAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.humanize",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_celery_results",
    "django_celery_beat",
    "axes",
    # Its templates and static files: the API's docs page loads Swagger UI from here, not a CDN.
    "ninja",
    "parroter",
    "jobs",
    "dashboard",
]

MIDDLEWARE = [
    # First: whatever reads X-Forwarded-* (the HTTPS check, the client's address) must only see
    # what a trusted proxy set (PARROTER_TRUSTED_PROXIES).
    "parroter.middleware.TrustedProxyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "parroter.middleware.ViewerTimeZoneMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "parroter.middleware.HtmxLoginRedirectMiddleware",
    # Everything needs a login unless a view opts out (login page, health probes).
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a refused sign-in into its lockout page (429).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "parroter.urls"
WSGI_APPLICATION = "parroter.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        # Persistent connections in web and worker (Celery's Django fixup closes them around
        # forks and honours the age); the health check drops one the server closed meanwhile.
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat write concurrently: WAL lets readers go on during a write,
    # IMMEDIATE takes the write lock up front so transactions wait instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes' backend comes first: it refuses a locked-out sign-in before a password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:upload"
LOGOUT_REDIRECT_URL = "/accounts/login/?signed_out=1"  # the login page says so

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
# Uploads and archives in progress live here; on the media disk so a finished file is
# moved into place with a rename rather than copied.
FILE_UPLOAD_TEMP_DIR = Path(os.environ.get("FILE_UPLOAD_TEMP_DIR", MEDIA_ROOT / "tmp"))
FILE_UPLOAD_TEMP_DIR.mkdir(parents=True, exist_ok=True)
FILE_UPLOAD_PERMISSIONS = 0o640
# The first handler stops storing an upload once it passes PARROTER_MAX_UPLOAD_BYTES.
FILE_UPLOAD_HANDLERS = [
    "jobs.uploads.UploadLimitHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
# Jobs' files: the local disk (MEDIA_ROOT) by default, or an S3-compatible bucket that every
# host reaches when PARROTER_S3_BUCKET is set. Media is never served by URL: downloads go through
# views that check ownership (jobs.downloads), then a presigned redirect on S3, nginx's
# X-Accel-Redirect on local disk with PARROTER_X_ACCEL=true, or the file from gunicorn.
PARROTER_S3_BUCKET = os.environ.get("PARROTER_S3_BUCKET", "").strip()
# How long a download's presigned URL works: it is made right after the permission check.
PARROTER_S3_PRESIGN_SECONDS = env_int("PARROTER_S3_PRESIGN_SECONDS", 300)
PARROTER_X_ACCEL = env_bool("PARROTER_X_ACCEL")
# Seconds a storage request may wait to connect, and then for each read, before it fails (and is
# tried again, 3 attempts in all): a hung or unreachable S3 fails a request, a job's step or a
# chore within seconds instead of botocore's 60 s per attempt.
PARROTER_S3_TIMEOUT = env_float("PARROTER_S3_TIMEOUT", 5.0)

if PARROTER_S3_BUCKET:
    from botocore.config import Config as _S3Config

    _s3_endpoint = env_optional("PARROTER_S3_ENDPOINT_URL")
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": PARROTER_S3_BUCKET,
            "endpoint_url": _s3_endpoint,
            "region_name": env_optional("PARROTER_S3_REGION"),
            # Both empty: boto3's own chain (AWS_* variables, ~/.aws, an instance or task role).
            "access_key": env_optional("PARROTER_S3_ACCESS_KEY_ID"),
            "secret_key": env_optional("PARROTER_S3_SECRET_ACCESS_KEY"),
            # Private objects (no ACL: the bucket's own policy), reached only by presigned URLs.
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": PARROTER_S3_PRESIGN_SECONDS,
            # The client's own settings (django-storages makes them from its options unless given
            # them whole): every S3-compatible server (MinIO, Ceph, R2...) takes path-style
            # addresses, AWS's own endpoint (no PARROTER_S3_ENDPOINT_URL) keeps boto3's choice.
            "client_config": _S3Config(
                s3={"addressing_style": "path" if _s3_endpoint else None},
                signature_version="s3v4",
                connect_timeout=PARROTER_S3_TIMEOUT,
                read_timeout=PARROTER_S3_TIMEOUT,
                retries={"mode": "standard", "max_attempts": 3},
            ),
            # A file read back (a job's source, an archive for a preview) spills from memory to
            # FILE_UPLOAD_TEMP_DIR past this size, so a 50 MB source does not sit in a worker's RAM.
            "max_memory_size": 2 * 1024 * 1024,
        },
    }
else:
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# Source maps (the API docs' bundles ship 10 MB of them) are for a browser's developer tools,
# not pages: compressing them with brotli took most of collectstatic's 20 s.
WHITENOISE_SKIP_COMPRESS_EXTENSIONS = (*Compressor.SKIP_COMPRESS_EXTENSIONS, "map")

SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# The proxies (nginx) whose X-Forwarded-Proto and X-Forwarded-For are believed: addresses or
# networks. From anyone else parroter.middleware.TrustedProxyMiddleware drops those headers.
try:
    PARROTER_TRUSTED_PROXIES = [
        ipaddress.ip_network(item, strict=False)
        for item in env_list("PARROTER_TRUSTED_PROXIES", "127.0.0.1,::1")
    ]
except ValueError as error:
    raise ImproperlyConfigured(f"PARROTER_TRUSTED_PROXIES: {error}") from error
# HTTPS=true: served over TLS, terminated by a proxy that sets X-Forwarded-Proto.
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]  # probes call in plain HTTP
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600)
    # As cookiecutter-django: on unless the site's other subdomains cannot do HTTPS.
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    # Only when asked: the domain is then submitted to browsers' built-in lists, which takes
    # months to undo. The lists take a year or more, subdomains included, and nothing less.
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD")
    if SECURE_HSTS_PRELOAD and (
        SECURE_HSTS_SECONDS < 365 * 24 * 3600 or not SECURE_HSTS_INCLUDE_SUBDOMAINS
    ):
        raise ImproperlyConfigured(
            "SECURE_HSTS_PRELOAD=true needs SECURE_HSTS_SECONDS of at least 31536000 (a year) "
            "and SECURE_HSTS_INCLUDE_SUBDOMAINS=true: browsers' preload lists refuse less."
        )
    if not SECURE_HSTS_PRELOAD:
        # check --deploy's nudge to preload (W021): not preloading is the default, not a slip.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True

# --- Sign-in lockout (django-axes) -------------------------------------------------------
# After AXES_FAILURE_LIMIT wrong passwords for one username from one address, that pair is
# refused (429, registration/locked_out.html) until AXES_COOLOFF_MINUTES pass without another
# try. By the pair, so an attacker cannot lock a person out from elsewhere, and one address
# (an office behind NAT) does not lock out all its users. Kept in the database, so every web
# process and restart sees the same counts; `manage.py axes_reset` unlocks everyone.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_RESET_ON_SUCCESS = True  # a typo now and then never adds up to a lockout
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# The client's address as the trusted proxy saw it, not the proxy's own (which all share).
AXES_CLIENT_IP_CALLABLE = "parroter.middleware.client_ip"

# --- Celery (read by parroter.celery_app with the CELERY_ namespace) ---------------------
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# django-celery-results' "django-db" backend, storing a task's row with one statement.
CELERY_RESULT_BACKEND = "jobs.results:ResultBackend"
CELERY_RESULT_EXTENDED = True
# No STARTED row per job: the Job row already says running, where and since when.
CELERY_TASK_TRACK_STARTED = False
# Celery's Django fixup closes database connections around every task unless told to reuse
# them; parroter.celery_app then lets Django's own CONN_MAX_AGE and health checks decide.
CELERY_DB_REUSE_MAX = 1_000_000
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Task events (received, started, succeeded...) are what Flower's task list is made of; the
# workers send them in batches (parroter.celery_app.BatchTaskEvents), ~0.5 ms per job over worker
# and Flower (README, "The pipeline against its ceiling"). The console and the monitor need none
# of them: the Job rows have every job, and workers send their heartbeats either way. Off, Flower
# shows workers and queues only. Web sends no "task-sent" event (Celery's default): a queued job
# is on the console, and in its queue's length on Flower's broker page.
PARROTER_TASK_EVENTS = env_bool("PARROTER_TASK_EVENTS", True)
CELERY_WORKER_SEND_TASK_EVENTS = PARROTER_TASK_EVENTS
CELERY_TASK_SEND_SENT_EVENT = False
# A quarter of a second is below what a person watching Flower notices, and gathers the events
# of ~25 jobs at 100 jobs/s into one message.
PARROTER_TASK_EVENTS_BATCH_SECONDS = env_float("PARROTER_TASK_EVENTS_BATCH_SECONDS", 0.25)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A pool process whose peak resident memory (KiB) has passed this is replaced by a fresh one
# after its job: billiard reads the peak (getrusage's ru_maxrss, ~2 us a task), not what the
# process holds now, so one big job recycles its process, and with it the address space that
# RLIMIT_AS (PARROTER_JOB_MEMORY) counts against the next job.
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env_int("CELERY_WORKER_MAX_MEMORY_PER_CHILD", 512 * 1024)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 300)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 360)
# A job message that is not acked (worker died) comes back after this many seconds at the
# latest; it must be longer than the hard time limit or a slow job would run twice. The monitor
# puts back a lost worker's messages much sooner (PARROTER_WORKER_LOST_AFTER).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
    # A synchronous command (a publish from web, an ack, an inspect) gives up on a broker that
    # accepts but never answers instead of waiting forever; kombu's event loop in the workers
    # checks its own long polls, so this bounds only single commands.
    "socket_timeout": 2,
    "socket_connect_timeout": 1,
    # Ten priority lists per queue (kombu's default is four): fair dispatch
    # (jobs.services.dispatch_priority) puts a job in the list of how many jobs its owner
    # already has waiting or running, and workers take from the lowest list first.
    "priority_steps": list(range(10)),
}
# A publish that fails is not retried at length inside a request: the job stays queued and
# unpublished, and the dispatcher sends it once the broker is back.
CELERY_BROKER_CONNECTION_TIMEOUT = 1
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}
CELERY_TIMEZONE = TIME_ZONE
# Beat's schedule lives in django-celery-beat's tables only, seeded by a migration and edited
# in admin (CELERY_BEAT_SCHEDULE would be written over them at every start of beat).
# Housekeeping has a queue of its own, served by its own worker (Procfile), so a backlog of
# jobs never delays it.
CELERY_TASK_ROUTES = {
    "jobs.dispatch_waiting_jobs": {"queue": "housekeeping"},
    "jobs.reap_stuck_jobs": {"queue": "housekeeping"},
    "jobs.purge_expired_jobs": {"queue": "housekeeping"},
    "jobs.sweep_orphan_files": {"queue": "housekeeping"},
    "jobs.compact_rollups": {"queue": "housekeeping"},
    "jobs.evaluate_alerts": {"queue": "housekeeping"},
    "jobs.deliver_alert": {"queue": "housekeeping"},
    "celery.backend_cleanup": {"queue": "housekeeping"},
}

# Shared by every process: the API's throttles and cached sums of earlier days' rollups. Short
# socket timeouts, and after one failure a few seconds of failing at once (parroter.cache): with
# the broker's Redis down or hung, pages render from the database without waiting on it.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "parroter",
        "OPTIONS": {
            "socket_connect_timeout": 0.5,
            "socket_timeout": 0.5,
            "connection_class": FailFastConnection,
        },
    }
}

# --- Flower: staff reach it at /flower/ through the web app ------------------------------
# Flower on loopback (the internal network in docker-compose), run with --url_prefix=flower.
FLOWER_URL = os.environ.get("FLOWER_URL", "http://127.0.0.1:5555")
# Flower's own login, user:password: the proxy sends it, Flower refuses to start without it.
FLOWER_BASIC_AUTH = os.environ.get("FLOWER_BASIC_AUTH", "")
# django-revproxy reads this (it is not an installed app): a space in a path is %20, not '+'.
REVPROXY = {"QUOTE_SPACES_AS_PLUS": False}

# --- Job limits -------------------------------------------------------------------------
PARROTER_MAX_UPLOAD_BYTES = env_int("PARROTER_MAX_UPLOAD_BYTES", 50 * 1024 * 1024)
# One job takes up to this many images and bytes in all (a proxy's body limit must allow it).
PARROTER_MAX_IMAGES = env_int("PARROTER_MAX_IMAGES", 200)
PARROTER_MAX_JOB_BYTES = env_int("PARROTER_MAX_JOB_BYTES", 500 * 1024 * 1024)
# Django refuses a request with more files than this outright (a bare 400); up to it, the form
# says what the limit is.
DATA_UPLOAD_MAX_NUMBER_FILES = 2 * PARROTER_MAX_IMAGES
PARROTER_MAX_PIXELS = env_int("PARROTER_MAX_PIXELS", 120_000_000)
# CPU seconds the checks of one upload's files may take together; the files past it are
# refused with a message (an ordinary photo's check takes under a millisecond).
PARROTER_UPLOAD_CHECK_SECONDS = env_float("PARROTER_UPLOAD_CHECK_SECONDS", 1.0)
# How often each worker looks for queues operators paused or resumed (jobs.models.QueuePause).
PARROTER_QUEUE_PAUSE_CHECK_SECONDS = env_float("PARROTER_QUEUE_PAUSE_CHECK_SECONDS", 2.0)
# Address space each worker pool process may map beyond what it had at start (bytes; 0: no
# limit): above jobs.kinds.thumbnails.DECODE_MEMORY_BUDGET (1 GiB), which refuses images whose
# decode would cost more, so this only stops what that estimate misses (parroter.celery_app).
PARROTER_JOB_MEMORY = env_int("PARROTER_JOB_MEMORY", 2 * 1024**3)
PARROTER_MAX_SIZES = env_int("PARROTER_MAX_SIZES", 8)
PARROTER_MAX_EDGE = env_int("PARROTER_MAX_EDGE", 4096)
PARROTER_DEFAULT_SIZES = env_list("PARROTER_DEFAULT_SIZES", "128,256,512")
# A queued job whose message the broker never accepted is sent again after this many seconds
# (jobs.services.dispatch_waiting_jobs); one the broker took is never sent twice.
PARROTER_REDISPATCH_AFTER = env_int("PARROTER_REDISPATCH_AFTER", 60)
# A job worker not heard from for this many seconds (its host died, or was cut off) has lost
# what it held: the monitor runs its jobs again elsewhere and puts back the messages it had
# taken, long before Redis's visibility timeout (jobs.monitoring, parroter.celery_app).
PARROTER_WORKER_LOST_AFTER = env_float("PARROTER_WORKER_LOST_AFTER", 15.0)
# Every worker sweeps its host's stale temporary files (FILE_UPLOAD_TEMP_DIR) when it starts and
# then this often, in seconds (jobs.tempfiles).
PARROTER_TEMP_SWEEP_SECONDS = env_int("PARROTER_TEMP_SWEEP_SECONDS", 3600)
# Finished jobs, their files and task results are deleted after this many days.
PARROTER_RETENTION_DAYS = env_int("PARROTER_RETENTION_DAYS", 30)
# The audit log (who retried, cancelled, paused...) is kept longer: it outlives the jobs.
PARROTER_AUDIT_RETENTION_DAYS = env_int("PARROTER_AUDIT_RETENTION_DAYS", 400)
# Celery's own backend_cleanup (run by beat daily) prunes task results on the same horizon.
CELERY_RESULT_EXPIRES = PARROTER_RETENTION_DAYS * 86400
# A job interrupted this many times (worker killed mid-run) is failed instead of retried.
PARROTER_MAX_ATTEMPTS = env_int("PARROTER_MAX_ATTEMPTS", 3)
# Rows a minute's history (per kind and outcome) is spread over, so that jobs finishing at once
# add to different rows instead of queueing on one row's lock on PostgreSQL (README: the
# finishes bench); readers sum them, compaction merges them. Past the pool processes of every
# worker host, more shards only add rows; 1 puts a minute's finishes in one row.
PARROTER_ROLLUP_SHARDS = env_int("PARROTER_ROLLUP_SHARDS", 16)
if not 1 <= PARROTER_ROLLUP_SHARDS <= 32767:  # jobs.JobRollup.shard is a small integer
    raise ImproperlyConfigured("PARROTER_ROLLUP_SHARDS must be between 1 and 32767.")

# --- Rates (jobs/limits.py) -------------------------------------------------------------------
# Per user ("count/period": s, m, h or d), counted atomically in the shared cache: the API's
# requests (past them 429 with Retry-After), and jobs started on the upload page or the API
# together (the page refuses with a message, the API with 429). A submit through the API counts
# against both.
PARROTER_API_RATE = os.environ.get("PARROTER_API_RATE", "600/m")
PARROTER_SUBMIT_RATE = os.environ.get("PARROTER_SUBMIT_RATE", "60/m")

# --- Fair share between people (jobs/services.py, jobs/forms.py) ------------------------------
# On (the default), a job goes ahead of those of anyone with more jobs waiting or running than
# its owner (README: fair share); off, the queue is first in, first out.
PARROTER_FAIR_DISPATCH = env_bool("PARROTER_FAIR_DISPATCH", True)
# Per person: jobs waiting at once, and images submitted per day (UTC); 0 means no limit.
PARROTER_MAX_QUEUED_PER_USER = env_int("PARROTER_MAX_QUEUED_PER_USER", 500)
PARROTER_MAX_IMAGES_PER_DAY = env_int("PARROTER_MAX_IMAGES_PER_DAY", 20000)

# --- Alerts (jobs/alerts.py) and e-mail ------------------------------------------------------
# A notice a receiver does not take is tried this many times in all, with backoff, then given up.
PARROTER_ALERT_DELIVERY_ATTEMPTS = env_int("PARROTER_ALERT_DELIVERY_ATTEMPTS", 6)
# E-mail (alert notices) goes through SMTP when EMAIL_HOST is set, else to the log of the
# process that sends it (the housekeeping worker's).
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS")
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL")
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)  # seconds: a hung mail server fails the attempt
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "parroter@localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"no_client_tracebacks": {"()": "parroter.logfilters.NoClientErrorTraceback"}},
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        # django-axes logs every sign-in at INFO; its warnings (failures, lockouts) are what
        # matter.
        "axes": {"level": "WARNING"},
        # A 403 or 400 is one WARNING line; Django attaches the refusal's traceback to it.
        "django.request": {"filters": ["no_client_tracebacks"]},
        # Pillow logs some broken input at ERROR ("More samples per pixel than can be decoded")
        # as it raises; the refusal already tells the file's owner, and an operator nothing.
        "PIL": {"level": "CRITICAL"},
    },
}
