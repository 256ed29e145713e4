"""Text to model inputs, shared by training and the endpoint: text pairs to token ids
(`pair_encoding`), long records as windows (`windows`), the TF-IDF half of a hybrid (`tfidf`),
and probabilities to decisions at the tuned thresholds (`decisions`).
"""
