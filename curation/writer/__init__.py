"""Writing the run's dataset: outcomes → every mode's shards in one pass, rejects, manifest, card and
figures; the one publishing path of `curation.run` and `curation.merge`."""
