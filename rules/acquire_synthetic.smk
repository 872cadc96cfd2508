# Synthetic source (the mini-universe): fills ACQUIRE_INPUTS['synthetic'].
