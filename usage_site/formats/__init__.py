"""Date formats of the site, by language, for Django's ``FORMAT_MODULE_PATH``."""
