import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parroter.settings")
application = get_wsgi_application()

# Django, the URLconf and every view it imports live as long as the process: frozen, they are
# out of the collector's way. Otherwise each full collection walks ~200,000 of them, a pause of
# ~100 ms every few dozen console requests (the p99 of /ops/stats was 90 ms for a p50 of 25).
get_resolver().url_patterns  # noqa: B018 - imports the URLconf and the views now, not later
gc.freeze()
