"""Small measurements the code's design rests on, each runnable on its own (``docs/measurements.md``
lists what each showed and when)."""
