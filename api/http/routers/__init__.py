"""Thin routers: parse input, call one store method or query, return a model."""
