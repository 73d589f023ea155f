"""mcmi: knowledge distillation with teachers trained to estimate the Bayes conditional
probability distribution by maximizing log-likelihood plus conditional mutual information
(Ye et al., "Bayes Conditional Distribution Estimation for Knowledge Distillation Based on
Conditional Mutual Information", ICLR 2024)."""

__version__ = "0.1.0"
