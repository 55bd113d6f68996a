"""The treasury: watch the USDC wallet and providers' prepaid credit, top up under policy, in two phases.

`config` reads the policy file and the environment; `service` orders the steps (evaluate, propose,
approve, execute, reconcile) around the pure rules of `butler_skill.core.treasury`.
"""
