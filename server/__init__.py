"""Homework: home exercise programs for clinics."""
