"""Few-step students: progressive distillation's stage loop and target (``stage``, ``targets``)
and the distillation methods built on them (``distill.methods``: PD, RDD), each registered where
it is defined."""
