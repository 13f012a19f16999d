"""The golden store: where goldens live (layout), what vouches for them (manifest, sealing), how
they are written (writing, atomic) and how every byte is vetted before torch reads it (vetting,
archives, pickles, operators, files, safeload)."""
