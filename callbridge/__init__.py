"""callbridge: AI voice agents on phone calls. The one console command lives in :mod:`.cli`."""
