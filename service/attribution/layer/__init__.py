"""Layer attribution: how much each neuron of a hidden layer contributes to the output."""
