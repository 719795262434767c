"""X-User-ID (usage.user_header): sent, it must name the token's owner; a value that names
nobody, as a JavaScript client writes an unset variable, counts as not sent."""

import pytest

from tests.conftest import post_usage
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db

RECORD = {"model": "SD", "count": 1}


def stored() -> list[str]:
    return list(UsageRecord.objects.values_list("owner__username", flat=True))


@pytest.mark.parametrize("header", ["undefined", "null", "", "   ", " undefined ", "\tnull"])
def test_a_header_that_names_nobody_is_as_if_not_sent(owner, owner_api, header):
    response = post_usage(owner_api, RECORD, HTTP_X_USER_ID=header)

    assert response.status_code == 201, response.json()
    assert stored() == ["alice"]


def test_without_the_header_the_token_alone_says_whose_records_they_are(owner, owner_api):
    assert post_usage(owner_api, RECORD).status_code == 201
    assert stored() == ["alice"]


@pytest.mark.parametrize("header", ["bob", "Undefined-Bob", "undefined1", "nul"])
def test_a_header_that_names_someone_else_is_still_forbidden(owner, other, owner_api, header):
    response = post_usage(owner_api, RECORD, HTTP_X_USER_ID=header)

    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert stored() == []


def test_another_users_token_with_the_owners_name_stores_nothing_for_either(owner, other_api):
    response = post_usage(other_api, RECORD, HTTP_X_USER_ID="alice")

    assert response.status_code == 403
    assert stored() == []
