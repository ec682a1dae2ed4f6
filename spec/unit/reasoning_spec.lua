local reasoning = require "moongate.reasoning"
local exchange_ok, exchange = pcall(require, "moongate.exchange")

describe("reasoning", function()
  it("converts efforts and budgets by one table", function()
    assert.equal(1024, reasoning.budget_for("minimal"))
    assert.equal(16384, reasoning.budget_for("high"))
    assert.is_nil(reasoning.budget_for("none"))
    assert.equal("minimal", reasoning.effort_for(500))
    assert.equal("low", reasoning.effort_for(4096))
    assert.equal("medium", reasoning.effort_for(5000))
    assert.equal("xhigh", reasoning.effort_for(100000))
    for effort, budget in pairs(reasoning.budgets) do
      assert.equal(effort, reasoning.effort_for(budget))
    end
  end)

  it("takes ChatMock-style suffixes off model names", function()
    assert.same({ "gpt-5", "high" }, { reasoning.split_suffix("gpt-5-high") })
    assert.same({ "o3", "low" }, { reasoning.split_suffix("o3_low") })
    assert.same({ "gpt-5", "xhigh" }, { reasoning.split_suffix("gpt-5-xhigh") })
    assert.same({ "claude-sonnet-4" }, { reasoning.split_suffix("claude-sonnet-4") })
    assert.same({ "high" }, { reasoning.split_suffix("high") })
    assert.same({ "-high" }, { reasoning.split_suffix("-high") })
    assert.same({ "gpt-4o-mini", "medium" }, { reasoning.split_suffix("gpt-4o-mini_medium") })
    assert.same({ "a-", "high" }, { reasoning.split_suffix("a--high") })
    -- an effort only at the very end, in lowercase
    assert.same({ "gpt-5-High" }, { reasoning.split_suffix("gpt-5-High") })
    assert.same({ "gpt-5-high-fast" }, { reasoning.split_suffix("gpt-5-high-fast") })
    assert.same({ "gpt-5-none" }, { reasoning.split_suffix("gpt-5-none") })
  end)
end)

describe("retry backoff", function()
  it("grows exponentially with jitter, honours Retry-After, and is capped", function()
    assert.is_true(exchange_ok, tostring(exchange))
    for _ = 1, 50 do
      local d1, d3 = exchange.backoff(1, nil, 100), exchange.backoff(3, nil, 100)
      assert.is_true(d1 >= 100 and d1 <= 150)
      assert.is_true(d3 >= 400 and d3 <= 600)
    end
    assert.is_true(exchange.backoff(1, 2, 100) >= 2000)
    assert.equal(30000, exchange.backoff(20, nil, 100))
  end)
end)
