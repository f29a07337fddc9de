"""Django admin's site, which every model's admin joins (Parroter's and its libraries'): their
lists refuse a filter value with NUL (?status=%00), which PostgreSQL's text cannot hold and which
failed as a 500, with the message Django's own search box gives it."""

from functools import cache

from django.contrib import admin, messages
from django.contrib.admin.apps import AdminConfig
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError
from django.core.validators import ProhibitNullCharactersValidator


class ParroterAdminConfig(AdminConfig):
    default_site = "parroter.admin_site.ParroterAdminSite"


class ParroterAdminSite(admin.AdminSite):
    def register(self, model_or_iterable, admin_class=None, **options) -> None:
        base = admin_class or admin.ModelAdmin
        refusing = type(base.__name__, (_ListRefusesNul, base), {"__module__": base.__module__})
        super().register(model_or_iterable, refusing, **options)


class _ListRefusesNul:
    def get_changelist(self, request, **kwargs) -> type[ChangeList]:
        return _refusing_nul(super().get_changelist(request, **kwargs))


@cache
def _refusing_nul(changelist: type[ChangeList]) -> type[ChangeList]:
    return type(changelist.__name__, (_FiltersRefuseNul, changelist), {})


class _FiltersRefuseNul:
    def get_filters(self, request):
        for values in self.get_filters_params().values():
            for value in values:
                try:
                    ProhibitNullCharactersValidator()(value)
                except ValidationError as error:
                    # As any filter it cannot use: back to the unfiltered list, saying why.
                    messages.error(request, " ".join(error.messages))
                    raise IncorrectLookupParameters(error) from error
        return super().get_filters(request)
