"""The state layer shared by the API and the workers: settings, SQL tables, artifact files."""
