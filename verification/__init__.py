"""Public verification: the page, the JSON endpoint, SMS in and out, limits and figures."""
