"""Model files and where they come from: segment classes with colours and terminology (`segment_classes`), the
.safetensors model file with its metadata (`model_file`), the registry of named models (`registry`) and the
user's changes to it (`user_registry`), the intensity normalisation a model records (`intensity`), verified downloads (`download`), the per-user folders (`user_folders`)
and the bundled sample CT (`bundled_data`)."""
