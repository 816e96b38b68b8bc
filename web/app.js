// The web client (being written).
