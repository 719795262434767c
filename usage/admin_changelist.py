"""Admin change lists that answer any query string clearly, never with a 500.

The admin turns a change list's query string into a query: filters (``?model=...``), any
lookup on a filtered field (``?created_at__year=...``), the date hierarchy, the search box.
Django answers a lookup it cannot build by redirecting to ``?e=1``, but some values build a
query that only fails when it runs: a NUL byte, which PostgreSQL text cannot hold; a year
past 9999, which fails while the SQL is written; a regular expression the database refuses;
a search of thousands of words, deeper than SQLite's expression limit. Here:

- a NUL anywhere in the query string is refused before any query (the ``?e=1`` redirect);
- ``regex`` and ``iregex`` lookups are not allowed at all (a 400, as for any lookup the
  admin does not allow): a pattern is a program the database would run;
- a search is at most ``MAX_SEARCH_TERMS`` words (the form says so, and lists everything);
- the list's SQL is written once before it runs, so that a value it cannot be written
  with (a year past 9999) is answered ``?e=1`` too, and whatever the database or its
  driver still refuses when the count runs is caught there, in a savepoint.

Every ModelAdmin of the site uses ``CheckedChangeListAdmin``; ``usage.admin`` registers
Django's user and group admins again with it.
"""

from django import forms
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import SEARCH_VAR, ChangeList, ChangeListSearchForm
from django.core.exceptions import EmptyResultSet, FullResultSet, ValidationError
from django.db import DataError, transaction
from django.db.models import QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest
from django.utils.text import smart_split

MAX_SEARCH_TERMS = 20
MAX_SEARCH_LENGTH = 500
REFUSED_LOOKUPS = frozenset({"regex", "iregex"})


def search_terms(text: str) -> list[str]:
    """The words the admin searches for, as ``ModelAdmin.get_search_results`` splits them."""
    return list(smart_split(text))


def check_search_terms(text: str) -> None:
    if len(search_terms(text)) > MAX_SEARCH_TERMS:
        raise ValidationError(f"Search for at most {MAX_SEARCH_TERMS} words.")


class CheckedSearchForm(ChangeListSearchForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # CharField refuses NUL bytes already; these bound the SQL a search writes.
        self.fields[SEARCH_VAR] = forms.CharField(
            required=False,
            strip=False,
            max_length=MAX_SEARCH_LENGTH,
            validators=[check_search_terms],
        )


class CheckedChangeList(ChangeList):
    search_form_class = CheckedSearchForm

    def get_queryset(self, request: HttpRequest, exclude_parameters=None) -> QuerySet:
        if any("\x00" in key or "\x00" in value for key, value in _items(request)):
            raise IncorrectLookupParameters("A NUL byte in the query string.")
        try:
            return super().get_queryset(request, exclude_parameters)
        except OverflowError as error:  # a date-hierarchy year past what datetime holds
            raise IncorrectLookupParameters(error) from error

    def get_results(self, request: HttpRequest) -> None:
        self.check_sql()
        # The first query that runs the filters is the count. In a savepoint, so that a
        # refused query leaves the request's transaction (if any) usable.
        try:
            with transaction.atomic(using=self.queryset.db):
                super().get_results(request)
        except (DataError, OverflowError) as error:  # refused by the database or its driver
            raise IncorrectLookupParameters(error) from error

    def check_sql(self) -> None:
        """Write the list's SQL without running it: a value that cannot be written (a year
        past 9999, a ``__range`` of one value) is a bad lookup, as Django's own
        ``get_queryset`` treats any error while building the query."""
        try:
            self.queryset.query.get_compiler(using=self.queryset.db).as_sql()
        except (EmptyResultSet, FullResultSet):  # nothing or everything: both fine
            pass
        except Exception as error:
            raise IncorrectLookupParameters(error) from error


def _items(request: HttpRequest):
    for key, values in request.GET.lists():
        for value in values:
            yield key, value


class CheckedChangeListAdmin(admin.ModelAdmin):
    """A ModelAdmin whose change list is ``CheckedChangeList``."""

    def get_changelist(self, request: HttpRequest, **kwargs) -> type[ChangeList]:
        return CheckedChangeList

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        if lookup.rsplit(LOOKUP_SEP, 1)[-1] in REFUSED_LOOKUPS:
            return False
        return super().lookup_allowed(lookup, value, request)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        # The change list's form has checked the term; the autocomplete of foreign keys
        # (which searches this admin too) has not. No stored text holds a NUL.
        if "\x00" in search_term or len(search_terms(search_term)) > MAX_SEARCH_TERMS:
            return queryset.none(), False
        return super().get_search_results(request, queryset, search_term)
