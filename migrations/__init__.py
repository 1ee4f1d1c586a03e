"""The schema, as plain SQL files applied in name order (shipped as the package data `invoicing.migrations`)."""
