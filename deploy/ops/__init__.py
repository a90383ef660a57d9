"""Operating a running stack: backups and restores, one-off containers, maintenance mode.

Pure builders (``backup``, ``maintenance``) return argv lists and text; ``target`` describes where a
stack's database lives (the local compose stack or a Swarm environment); the step modules
(``backups``, ``oneoff``) put the commands in order and hand them to the one Runner.
"""
