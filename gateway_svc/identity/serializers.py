from rest_framework import serializers

from common.schema import ProblemSerializer

__all__ = [
    "JwkSerializer",
    "JwksSerializer",
    "ProblemSerializer",
    "RefreshSerializer",
    "TokenObtainSerializer",
    "TokenPairSerializer",
]


class TokenObtainSerializer(serializers.Serializer):
    email = serializers.CharField(max_length=254)
    password = serializers.CharField(max_length=4096, style={"input_type": "password"})


class RefreshSerializer(serializers.Serializer):
    refresh = serializers.CharField()


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class JwkSerializer(serializers.Serializer):
    kty = serializers.CharField()
    kid = serializers.CharField()
    alg = serializers.CharField()
    use = serializers.CharField()
    n = serializers.CharField()
    e = serializers.CharField()


class JwksSerializer(serializers.Serializer):
    keys = JwkSerializer(many=True)
