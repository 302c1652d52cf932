"""What to create from an artifact: sidecars and Modelfiles, parameters, model names, paths a
sidecar names, weight-less recipes, name claims and the rules of dependencies. Pure."""
