# Archive sources (tng, camels, local): fill ACQUIRE_INPUTS[...].
