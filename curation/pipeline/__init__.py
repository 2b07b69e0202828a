"""Building a dataset: the plan (recipe → modes → stages), the stages, the store, the gates, the
end-of-run dedup pass, and the executors that walk samples through the stages (local asyncio, Ray)."""
