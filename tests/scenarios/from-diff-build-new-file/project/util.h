int compute(int x);
