import signal

from django.core.management.base import BaseCommand

from jobs.monitoring import ClusterMonitor


class Command(BaseCommand):
    help = (
        "Watch the broker and the workers (heartbeats, queues) and keep the cluster report that "
        "pages, probes and /metrics read. One per deployment (more do no harm)."
    )

    def handle(self, *args, **options):
        monitor = ClusterMonitor()
        signal.signal(signal.SIGTERM, lambda *_: monitor.stop())
        signal.signal(signal.SIGINT, lambda *_: monitor.stop())
        self.stdout.write("monitor: watching the cluster; reports every few seconds")
        monitor.run()
