"""One file per method, each declaring its method once with ftbench.registry.register(Method(...)). The registry
imports every module here; nothing else lists the methods. Keep the top of each file free of torch and peft
(import them inside the functions), so that reading the registry stays fast."""
