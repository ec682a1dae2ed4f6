-- busted --helper for the pure layer's specs run without the daemon's host
-- (spec/unit/pure_layer_spec.lua): requiring moongate.core or luv raises,
-- and the C modules' directory is off the path (moongate.jscan too: the
-- pure fallbacks run).
for _, name in ipairs { "moongate.core", "luv", "moongate.jscan" } do
  package.loaded[name] = nil
  package.preload[name] = function() error(name .. " is not available: the pure layer must not need it", 0) end
end
package.cpath = package.cpath:gsub("[^;]*build[^;]*;?", "")
