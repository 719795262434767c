from django.conf import settings
from django.http import JsonResponse
from rest_framework import generics
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from scripts.bench_peer.ingest.serializers import UsageRecordSerializer


class UsageRecordCreateView(generics.CreateAPIView):
    serializer_class = UsageRecordSerializer
    authentication_classes = []
    permission_classes = [AllowAny]

    def perform_create(self, serializer: UsageRecordSerializer) -> None:
        serializer.save(owner_id=settings.PEER_OWNER_ID)


class BareHealthView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request):
        return Response({"status": "ok"})


def plain_health(request):
    return JsonResponse({"status": "ok"})
