"""Text to model inputs, shared by training and the endpoint: text pairs to token ids
(`pair_encoding`), long records as windows (`windows`), and the TF-IDF half of a hybrid (`tfidf`).
"""
