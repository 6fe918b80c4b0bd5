"""What the fork server of a run's step processes loads before it forks them (`definitions.STEP_EXECUTOR`).

The run worker has just loaded the code location with the same environment, so loading it here succeeds too;
a case whose settings are wrong loads as its placeholder, as in the run worker. Each step process then starts
with every module imported and only builds the definitions again (a few hundred milliseconds).
"""

import definitions

definitions.defs()
