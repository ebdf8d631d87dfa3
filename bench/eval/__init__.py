"""The eval suite: cases judged by hidden tests, run through the whole product (python -m bench.eval)."""
