"""The local cloud: moto in-process with healthflow's queues, state machine and pipe.

`tasks.localcloud.cloud.LocalCloud` is the entry point; every moto internal lives in
`tasks.localcloud.moto_ext`. Import them explicitly: importing moto is slow.
"""
