from rest_framework import serializers

from scripts.bench_peer.ingest.models import UsageRecord


class UsageRecordSerializer(serializers.ModelSerializer):
    """The site's single-record body: ``modelName``, ``imageCount``, ``timestamp``, ``id``."""

    modelName = serializers.CharField(source="model", max_length=100)
    imageCount = serializers.IntegerField(source="image_count", min_value=1, max_value=10000)
    timestamp = serializers.DateTimeField(source="occurred_at", required=False)
    id = serializers.CharField(source="event_id", max_length=100, required=False)

    class Meta:
        model = UsageRecord
        fields = ["modelName", "imageCount", "timestamp", "id"]
