from django.apps import AppConfig


class IngestConfig(AppConfig):
    name = "scripts.bench_peer.ingest"
    # Its table is bench_peer_usagerecord, apart from the site's usage_usagerecord.
    label = "bench_peer"
