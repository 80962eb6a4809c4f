"""The whole contract suite, as a backend author runs it, against a real redis-server and a real
Redis Cluster of three masters (both started by the tests unless SESSIONSTORE_REDIS_URL is set)."""

from __future__ import annotations

import pytest

from sessionstore_contract import ContractTarget, StoreContract


class TestRedisSingleNode(StoreContract):
    @pytest.fixture(scope="class")
    @classmethod
    def sessionstore_target(cls, redis_url: str) -> ContractTarget:
        return ContractTarget.from_spec(redis_url)


class TestRedisCluster(StoreContract):
    @pytest.fixture(scope="class")
    @classmethod
    def sessionstore_target(cls, redis_cluster_url: str) -> ContractTarget:
        return ContractTarget.from_spec(redis_cluster_url)
